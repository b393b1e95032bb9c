"""What the tests, benchmarks and container checks share: real servers on loopback, real
fixture images encoded as users send them, and runs fabricated with random weights.

Installed with the project (editable) so everything imports it by name; it is not part of
the serving image (the Docker build context leaves it out).
"""
