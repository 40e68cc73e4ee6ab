"""HTTP routes, one module per endpoint group. Routes parse, authenticate, make one
engine call and return."""
