"""Seeded fuzz messages for a venue's command and control channels, what each one is owed, and
the book that checks a venue's replies against that (tests/integration/test_fuzz.py).

- ``reading``: ``owed``, what docs/protocol.md says the venue owes a message (nothing from
  ``bus``: the documented reading, not the implementation's).
- ``packing``: msgpack that msgpack-python will not write (malformed, ext, deep, odd maps).
- ``valid``, ``mutations``, ``frames``: ``FrameGenerator``, valid requests of every message
  type, their mutations and garbage; the same seed gives the same messages.
- ``checker``: ``Stream``, one fuzzing socket and the replies it is owed, judged as they come.
- ``runner``: ``Fuzz``, which interleaves the streams with bounded windows and reports.
"""
