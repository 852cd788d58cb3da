"""Benchmarks: each `python -m bench.<name>` prints one JSON line of results on stdout.

Progress goes to stderr. Every process, container and RabbitMQ vhost a benchmark starts
is removed before it exits, also when it fails or is interrupted.
"""
