"""Align CogVideoX with rewards from the critic service (a separate process: talks to it through clients/)."""
