"""Socket.IO namespaces, one class per file."""
