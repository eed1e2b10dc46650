"""Managed services: the small ElastiCache interface and the S3 bucket access ElastiCache needs."""
