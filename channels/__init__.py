"""Channel adapters: one per way an owner can reach us (DESIGN.md "Layout").

A channel verifies and parses an inbound request into an :class:`~channels.base.InboundMessage` and
renders or sends an :class:`~channels.base.OutboundMessage`. It never touches the database, Redis or
the NLU: whatever it needs from them (a token cache, the engine) is handed in through ``channels.base``.
"""
