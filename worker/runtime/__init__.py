"""Container runtimes behind one interface: Docker for real, mock for dry runs and tests."""
