"""Publishing results: sinks with their own bounded queues (MQTT, JSON lines), the HTTP server and its metrics."""
