"""qpuflow: exactly-once asynchronous QEC experiments on IBM Quantum hardware."""

__version__ = "0.1.0"
