"""What the bot does: tickets, answers, certificate look-ups, surveys, broadcasts, owner binding, hand-over.

Actions never import a channel: they hand outbound messages to the engine (DESIGN.md).
"""
