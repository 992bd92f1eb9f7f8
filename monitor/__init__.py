"""monitor: a streaming sensor-monitoring daemon (MQTT in, autoencoder scores, alerts out).

Layers: `monitor.core` (pure logic, no I/O), `monitor.io` (adapters: MQTT, files, sinks,
metrics), `monitor.app` (the commands and the daemon). See docs/architecture.md.
"""

__version__ = "0.1.0"
