"""wafmw: a web application firewall as pure ASGI middleware."""
