"""A stand-in for Hugging Face's `spaces` package (ZeroGPU), for tests: GPU(duration=...) records
each call and the duration it asked for as JSON lines in $SPACES_LOG."""
import functools
import inspect
import json
import os


def GPU(fn=None, duration=60):
    def wrap(f):
        def record(*args, **kwargs):
            seconds = duration(*args, **kwargs) if callable(duration) else duration
            with open(os.environ["SPACES_LOG"], "a") as log:
                log.write(json.dumps({"fn": f.__name__, "duration": seconds}) + "\n")

        @functools.wraps(f)
        def call(*args, **kwargs):
            record(*args, **kwargs)
            return f(*args, **kwargs)

        @functools.wraps(f)
        def stream(*args, **kwargs):  # generator handlers stay generators, as spaces.GPU keeps them
            record(*args, **kwargs)
            yield from f(*args, **kwargs)
        return stream if inspect.isgeneratorfunction(f) else call
    return wrap(fn) if fn is not None else wrap
