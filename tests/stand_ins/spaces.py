"""A stand-in for Hugging Face's `spaces` package (ZeroGPU), for tests: GPU(duration=...) records
each call and the duration it asked for as JSON lines in $SPACES_LOG."""
import functools
import json
import os


def GPU(fn=None, duration=60):
    def wrap(f):
        @functools.wraps(f)
        def call(*args, **kwargs):
            seconds = duration(*args, **kwargs) if callable(duration) else duration
            with open(os.environ["SPACES_LOG"], "a") as log:
                log.write(json.dumps({"fn": f.__name__, "duration": seconds}) + "\n")
            return f(*args, **kwargs)
        return call
    return wrap(fn) if fn is not None else wrap
