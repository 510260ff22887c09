"""The Linux I/O edge of the lab: network namespaces, packet capture, and supervised scenario programs."""
