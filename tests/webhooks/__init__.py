"""Provider webhook tests: signature checks and parsers, and the endpoints end to end."""
