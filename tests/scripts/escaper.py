"""Test agent: starts a grandchild in a NEW session (outside the turn's process group), prints its pid, then
sleeps forever. Killing the turn's group alone would leave the grandchild behind."""

import subprocess
import sys
import time

child = subprocess.Popen(["sleep", "300"], start_new_session=True)
print(f"escaped {child.pid}", flush=True)
sys.stdout.flush()
while True:
    time.sleep(1)
