"""Test agent: ignores SIGTERM (and SIGINT), prints "ready", then sleeps forever: only SIGKILL ends it."""

import signal
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
print("ready", flush=True)
while True:
    time.sleep(3600)
