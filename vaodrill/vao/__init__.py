"""Talks to VAO and VRO: the HTTP clients, their login and retries, the plan models and state vocabulary."""
