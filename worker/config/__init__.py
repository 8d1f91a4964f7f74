"""Configuration and security: settings from the environment, TLS and credentials."""
