# The broker URL, parsed one way for the uplink (service.py) and for config validation
# (app/config.py, also run by tools/flash.py under CPython): plain Python, nothing else imported.


def parse_broker(url):
    """mqtt://host:port or mqtts://host:port -> (host, port, tls)."""
    for scheme, tls in (("mqtt://", False), ("mqtts://", True)):
        if url.startswith(scheme):
            host, sep, port = url[len(scheme):].rpartition(":")
            if sep and host and port.isdigit() and 0 < int(port) < 65536:
                return host, int(port), tls
    raise ValueError("broker must be mqtt://host:port or mqtts://host:port, got %r" % (url,))
