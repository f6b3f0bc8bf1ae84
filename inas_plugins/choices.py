"""Values the library checks and the command line declares its options from: closed sets of
choices, and the environment variable that holds the Label Studio key.

Kept in a module that imports nothing, so the command line can declare its options from them
(``--color``, ``--format``, ``--what``, ``--api-key``) without importing torch or an HTTP client to
print its help.
"""

# How images are read: "auto" (RGB unless every image is grayscale), or forced to "rgb" or "gray".
COLOR_MODES = ("auto", "rgb", "gray")
# What `inas label export` writes, and in which format.
LABEL_EXPORT_FORMATS = ("csv", "json")
LABEL_EXPORTS = ("batch", "labels")
# The environment variable `inas label` reads the Label Studio API key from (never stored in a run).
LABEL_STUDIO_API_KEY_ENV = "LABEL_STUDIO_API_KEY"
