"""Development tools: local emulators and the local run. Not deployed."""
