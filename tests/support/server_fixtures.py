"""Session fixtures for real external servers (OpenBao, moto). Filled in by
the secret-store work; kept as a plugin so every test package can use them."""
