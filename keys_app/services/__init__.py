"""Services of the key hierarchy; see each module's docstring for its invariants."""
