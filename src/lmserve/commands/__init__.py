"""Commands of the `lmserve` command line that live in their own modules."""
