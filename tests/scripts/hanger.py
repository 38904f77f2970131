"""Test agent: prints "hanging" and then sleeps forever (dies to SIGTERM as usual)."""

import time

print("hanging", flush=True)
while True:
    time.sleep(3600)
