"""
Stage: the OCPP-J domain, shared by every stage.

Versions and their error codes, the message values and their framing, the
charge point identity rules, the envelope (a message as the gateway carries
it), and schema validation.  Pure values and functions: no Twisted, no
Autobahn, no paho, no I/O but reading the schema files.

May import: the standard library, jsonschema, and itself.  Enforced by the
import-linter contracts in pyproject.toml (``make test``).
"""
