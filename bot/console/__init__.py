"""`chatops console`: the Slack door in a terminal. The real Slack app runs in-process against a
local Web API server that renders what the bot sends (`server.py`); the REPL posts what a user
types to the bot as Slack would (`repl.py`); `render.py` turns Block Kit into terminal text."""
