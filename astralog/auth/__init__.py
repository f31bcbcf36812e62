"""Identity: credential formats, the ``Principal`` every caller becomes, browser sessions, and the
authenticator that turns a presented secret into a principal on the hot path."""
