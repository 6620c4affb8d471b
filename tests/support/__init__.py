"""What the tests share: backends, running lessons, snippets, servers that misbehave."""
