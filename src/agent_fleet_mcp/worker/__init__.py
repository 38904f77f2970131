"""The anthropic runner's own worker process: one agent turn of the Messages API tool loop.

``python -m agent_fleet_mcp.worker --agent-dir DIR --cwd DIR --model M --permission readonly|readwrite ...`` reads
the prompt on stdin and writes normalized events (events.py) as JSONL on stdout. Importing this package is cheap:
the ``anthropic`` SDK (~2 s) is imported only by ``loop.py``, after the ``started`` event is out.
"""
