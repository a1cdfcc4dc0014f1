"""Serial BMSes (JBD, JBD UP, Daly, ANT): runtime, entities, flow."""
