"""Test agent: starts a grandchild `sleep 300` (same process group), prints "grandchild <pid>" and "ready",
then sleeps forever. Killing only this process leaves the grandchild alive (still holding stdout open);
killing the whole process group ends both."""

import subprocess
import time

child = subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL)
print(f"grandchild {child.pid}", flush=True)
print("ready", flush=True)
while True:
    time.sleep(3600)
