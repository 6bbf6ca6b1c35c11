"""framelog: a video platform back end built as stream processing on Kafka."""
__version__ = "0.1.0"
