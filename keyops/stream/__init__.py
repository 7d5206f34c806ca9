"""Usage past one node: the stream of accepted usage, partitioned by key.

``base`` is the interface (publish, consume a partition, snapshot, lease);
``nats_js`` implements it over NATS JetStream. ``intake`` is what
``POST /v1/usage`` calls; ``workers`` runs the partitions this replica holds.
A Kafka backend would be one more module beside ``nats_js``.
"""
