"""The fault suite (issue 10, item 9): malformed inputs, killed runs, repeated runs, hostile text."""
