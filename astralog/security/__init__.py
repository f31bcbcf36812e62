"""Security primitives shared by connectors: SSRF-safe egress and field-level secret encryption."""
