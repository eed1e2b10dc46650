/*
 * The run scanner of snaptool/rdb/fastscan.py in C: the same loop, the same stopping rules.
 *
 * Optional: when it cannot be built, snaptool uses the Python loop. It only walks structure
 * (lengths and strings) inside a bytes buffer, every read bounds-checked, and stops at anything it
 * does not handle, so the general reader takes over with its own checks and messages. The tests
 * run both loops over every fixture and over mutated files and require identical results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define T_STRING 0
#define T_LIST 1
#define T_SET 2
#define T_HASH 4
#define T_ZSET_2 5
#define T_LIST_QUICKLIST 14
#define T_LIST_QUICKLIST_2 18
#define LZF_MAX_RATIO 88

/* Raw size of an encoded blob that holds nothing (0: not a blob type). */
static const unsigned char EMPTY_BLOB[256] = {
    [9] = 2, [10] = 11, [11] = 8, [12] = 11, [13] = 11, [16] = 7, [17] = 7, [20] = 7,
};
/* 1: the value is one String; 2: a count-prefixed structure this loop walks. */
static const unsigned char SHAPE[256] = {
    [0] = 1, [9] = 1, [10] = 1, [11] = 1, [12] = 1, [13] = 1, [16] = 1, [17] = 1, [20] = 1,
    [1] = 2, [2] = 2, [4] = 2, [5] = 2, [14] = 2, [18] = 2,
};

/* Whether the quicklist node String at p holds elements: 1 yes, 0 no, -1 cannot tell (as node_state). */
static int node_state(const unsigned char *buf, Py_ssize_t n, Py_ssize_t p, int count_at)
{
    if (p >= n)
        return -1;
    unsigned char b = buf[p];
    if (b >= 0x40)
        return 1;
    if (b < count_at + 2 || p + 2 + count_at >= n)
        return -1;
    return (buf[p + 1 + count_at] | buf[p + 2 + count_at]) ? 1 : 0;
}

/* An RDB length in the 1, 2 or 5 byte forms; -1 for anything else or past the end. */
static int read_length(const unsigned char *buf, Py_ssize_t n, Py_ssize_t *pos, uint64_t *out)
{
    Py_ssize_t p = *pos;
    if (p >= n)
        return -1;
    unsigned char b = buf[p];
    if (b < 0x40) {
        *out = b;
        *pos = p + 1;
        return 0;
    }
    if (b < 0x80) {
        if (p + 2 > n)
            return -1;
        *out = ((uint64_t)(b & 0x3F) << 8) | buf[p + 1];
        *pos = p + 2;
        return 0;
    }
    if (b == 0x80) {
        if (p + 5 > n)
            return -1;
        *out = ((uint64_t)buf[p + 1] << 24) | ((uint64_t)buf[p + 2] << 16) | ((uint64_t)buf[p + 3] << 8) |
               (uint64_t)buf[p + 4];
        *pos = p + 5;
        return 0;
    }
    return -1;
}

/* Move past an RDB String (raw, int-encoded or LZF within the reader's bound); -1 to stop. */
static int skip_string(const unsigned char *buf, Py_ssize_t n, Py_ssize_t *pos)
{
    Py_ssize_t p = *pos;
    uint64_t len, ulen;
    if (p >= n)
        return -1;
    switch (buf[p]) {
    case 0xC0: p += 2; break;
    case 0xC1: p += 3; break;
    case 0xC2: p += 5; break;
    case 0xC3:
        p += 1;
        if (read_length(buf, n, &p, &len) < 0 || read_length(buf, n, &p, &ulen) < 0)
            return -1;
        if (len == 0 || ulen > len * LZF_MAX_RATIO + 64 || len > (uint64_t)(n - p))
            return -1;
        p += (Py_ssize_t)len;
        break;
    default:
        if (buf[p] >= 0xC0 || read_length(buf, n, &p, &len) < 0 || len > (uint64_t)(n - p))
            return -1;
        p += (Py_ssize_t)len;
    }
    if (p > n)
        return -1;
    *pos = p;
    return 0;
}

/* Move past a count-prefixed value; -1 to stop (also for an empty one). */
static int skip_structured(const unsigned char *buf, Py_ssize_t n, Py_ssize_t *pos, int t)
{
    Py_ssize_t p = *pos;
    uint64_t count, i;
    if (read_length(buf, n, &p, &count) < 0 || count == 0)
        return -1;
    if (t == T_ZSET_2) {
        for (i = 0; i < count; i++) {
            if (skip_string(buf, n, &p) < 0 || p + 8 > n)
                return -1;
            p += 8;
        }
    } else if (t == T_LIST_QUICKLIST || t == T_LIST_QUICKLIST_2) {
        int filled = 0, count_at = t == T_LIST_QUICKLIST_2 ? 4 : 8;
        for (i = 0; i < count; i++) {
            int state;
            if (t == T_LIST_QUICKLIST_2) {
                if (p >= n || (buf[p] != 1 && buf[p] != 2))
                    return -1;
                state = buf[p] == 1 ? 1 : node_state(buf, n, p + 1, count_at);
                p += 1;
            } else {
                state = node_state(buf, n, p, count_at);
            }
            if (state < 0)
                return -1;
            filled |= state;
            if (skip_string(buf, n, &p) < 0)
                return -1;
        }
        if (!filled)
            return -1;
    } else {
        uint64_t strings = t == T_HASH ? count * 2 : count;
        if (strings < count)
            return -1;
        for (i = 0; i < strings; i++)
            if (skip_string(buf, n, &p) < 0)
                return -1;
    }
    *pos = p;
    return 0;
}

/* CRC-16/XMODEM and the cluster hash slot, hash tags included (as snaptool.rdb.checksum.key_slot). */
static uint16_t CRC16_TABLE[256];

static void init_crc16(void)
{
    for (int i = 0; i < 256; i++) {
        uint16_t crc = (uint16_t)(i << 8);
        for (int bit = 0; bit < 8; bit++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
        CRC16_TABLE[i] = crc;
    }
}

static int key_slot(const unsigned char *key, Py_ssize_t len)
{
    Py_ssize_t start, end;
    for (start = 0; start < len && key[start] != '{'; start++)
        ;
    if (start < len) {
        for (end = start + 1; end < len && key[end] != '}'; end++)
            ;
        if (end < len && end > start + 1) {
            key += start + 1;
            len = end - start - 1;
        }
    }
    uint16_t crc = 0;
    for (Py_ssize_t i = 0; i < len; i++)
        crc = (uint16_t)((crc << 8) ^ CRC16_TABLE[((crc >> 8) ^ key[i]) & 0xFF]);
    return crc & 0x3FFF;
}

/* The key String at p when stored raw (its slot needs the bytes): sets start/len, else -1. */
static int raw_key(const unsigned char *buf, Py_ssize_t n, Py_ssize_t p, Py_ssize_t *kstart, Py_ssize_t *klen)
{
    uint64_t len;
    Py_ssize_t q = p;
    if (p >= n || buf[p] >= 0x81 || read_length(buf, n, &q, &len) < 0 || len > (uint64_t)(n - q))
        return -1;
    *kstart = q;
    *klen = (Py_ssize_t)len;
    return 0;
}

static int add_to_list(PyObject *list, Py_ssize_t i, long long inc)
{
    PyObject *old = PyList_GetItem(list, i); /* borrowed */
    if (old == NULL)
        return -1;
    PyObject *delta = PyLong_FromLongLong(inc);
    if (delta == NULL)
        return -1;
    PyObject *sum = PyNumber_Add(old, delta);
    Py_DECREF(delta);
    if (sum == NULL || PyList_SetItem(list, i, sum) < 0) /* steals sum */
        return -1;
    return 0;
}

static int add_counts(PyObject *list, const long long *counts)
{
    for (Py_ssize_t t = 0; t < PyList_GET_SIZE(list); t++)
        if (counts[t] && add_to_list(list, t, counts[t]) < 0)
            return -1;
    return 0;
}

static PyObject *scan_run(PyObject *self, PyObject *args)
{
    Py_buffer view, maskv, ownerv = {0};
    PyObject *seen = NULL;
    Py_ssize_t pos, shards = 0;
    PyObject *type_keys, *type_bytes, *outs = NULL, *shard_keys = NULL, *shard_expires = NULL;
    long long threshold;
    if (!PyArg_ParseTuple(args, "y*ny*O!O!L|y*O!O!O!O!", &view, &pos, &maskv, &PyList_Type, &type_keys,
                          &PyList_Type, &type_bytes, &threshold, &ownerv, &PyList_Type, &outs, &PyList_Type,
                          &shard_keys, &PyList_Type, &shard_expires, &PyByteArray_Type, &seen))
        return NULL;
    PyObject *result = NULL, *big = NULL;
    long long *sk = NULL, *se = NULL;
    const unsigned char *owner = ownerv.buf;
    if (maskv.len != 256 || PyList_GET_SIZE(type_keys) != 256 || PyList_GET_SIZE(type_bytes) != 256 ||
        pos < 0 || pos > view.len) {
        PyErr_SetString(PyExc_ValueError, "scan_run: bad arguments");
        goto done;
    }
    if (outs != NULL) {
        shards = PyList_GET_SIZE(outs);
        if (ownerv.len != 16384 || shards < 1 || shards > 256 || PyList_GET_SIZE(shard_keys) != shards ||
            PyList_GET_SIZE(shard_expires) != shards || seen == NULL || PyByteArray_GET_SIZE(seen) != 16384) {
            PyErr_SetString(PyExc_ValueError, "scan_run: bad route");
            goto done;
        }
        for (Py_ssize_t i = 0; i < 16384; i++)
            if (owner[i] >= shards) {
                PyErr_SetString(PyExc_ValueError, "scan_run: owner table names a missing shard");
                goto done;
            }
        for (Py_ssize_t i = 0; i < shards; i++)
            if (!PyByteArray_Check(PyList_GET_ITEM(outs, i))) {
                PyErr_SetString(PyExc_TypeError, "scan_run: outputs must be bytearrays");
                goto done;
            }
        sk = PyMem_Calloc(shards, sizeof(long long));
        se = PyMem_Calloc(shards, sizeof(long long));
        if (sk == NULL || se == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    const unsigned char *buf = view.buf, *mask = maskv.buf;
    Py_ssize_t n = view.len, end = pos;
    long long keys = 0, expires = 0, idle_total = 0, freq_total = 0;
    long long tk[256] = {0}, tb[256] = {0};
    big = PyList_New(0);
    if (big == NULL)
        goto done;
    for (;;) {
        Py_ssize_t p = end;
        int expire = 0, idle = 0, freq = 0;
        uint64_t ignored;
        if (p >= n)
            break;
        unsigned char t = buf[p];
        if (t == 0xFC) {
            p += 9;
            if (p >= n)
                break;
            t = buf[p];
            expire = 1;
        }
        if (t == 0xF8) {
            p += 1;
            if (read_length(buf, n, &p, &ignored) < 0 || p >= n)
                break;
            t = buf[p];
            idle = 1;
        } else if (t == 0xF9) {
            p += 2;
            if (p >= n)
                break;
            t = buf[p];
            freq = 1;
        }
        if (!mask[t] || !SHAPE[t])
            break;
        Py_ssize_t start = p;
        p += 1;
        if (skip_string(buf, n, &p) < 0) /* the key */
            break;
        if (SHAPE[t] == 1) {
            if (p >= n)
                break;
            if (t != T_STRING && buf[p] < 0x40 && buf[p] == EMPTY_BLOB[t])
                break;
            if (skip_string(buf, n, &p) < 0)
                break;
        } else if (skip_structured(buf, n, &p, t) < 0) {
            break;
        }
        if (outs != NULL) {
            Py_ssize_t kstart, klen;
            if (raw_key(buf, n, start + 1, &kstart, &klen) < 0)
                break;
            int slot = key_slot(buf + kstart, klen);
            int shard = owner[slot];
            PyByteArray_AS_STRING(seen)[slot] = 1;
            PyObject *out = PyList_GET_ITEM(outs, shard);
            Py_ssize_t have = PyByteArray_GET_SIZE(out);
            if (PyByteArray_Resize(out, have + (p - end)) < 0)
                goto done;
            memcpy(PyByteArray_AS_STRING(out) + have, buf + end, (size_t)(p - end));
            sk[shard] += 1;
            se[shard] += expire;
        }
        long long size = p - start;
        tk[t] += 1;
        tb[t] += size;
        if (size >= threshold) {
            PyObject *pair = Py_BuildValue("(nn)", start - pos, p - pos);
            if (pair == NULL || PyList_Append(big, pair) < 0) {
                Py_XDECREF(pair);
                goto done;
            }
            Py_DECREF(pair);
        }
        keys += 1;
        expires += expire;
        idle_total += idle;
        freq_total += freq;
        end = p;
    }
    if (add_counts(type_keys, tk) < 0 || add_counts(type_bytes, tb) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < shards; i++)
        if ((sk[i] && add_to_list(shard_keys, i, sk[i]) < 0) || (se[i] && add_to_list(shard_expires, i, se[i]) < 0))
            goto done;
    result = Py_BuildValue("(nLLLLO)", end, keys, expires, idle_total, freq_total, big);
done:
    Py_XDECREF(big);
    PyMem_Free(sk);
    PyMem_Free(se);
    PyBuffer_Release(&view);
    PyBuffer_Release(&maskv);
    if (ownerv.obj != NULL)
        PyBuffer_Release(&ownerv);
    return result;
}

static PyMethodDef methods[] = {
    {"scan_run", scan_run, METH_VARARGS,
     "scan_run(buf, pos, mask, type_keys, type_bytes, threshold[, owner, outs, shard_keys, shard_expires, seen])"
     " -> (end, keys, expires, idle, freq, big)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastscan", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastscan(void)
{
    init_crc16();
    return PyModule_Create(&module);
}
