"""Human-in-the-loop active-iNAS: label a real pool of images in Label Studio or through plain files.

``inas label`` (``cli/label_cmd.py``) is the command line over these modules:

* :mod:`.project`: the run directory's ``project.json`` / ``state.json``;
* :mod:`.store`: ``labels.csv``, every answer people gave, written atomically;
* :mod:`.images`: the ``DIR/unlabelled``, ``DIR/labelled/<class>`` and ``DIR/test/<class>`` images;
* :mod:`.rounds`: one active-iNAS round on the labels (search, training, accuracy, the next batch);
* :mod:`.studio`: the Label Studio client side (``label-studio-sdk``, the ``label`` extra);
* :mod:`.files`: export of the batch / labels and import of answers, as CSV or JSON;
* :mod:`.session`: ``init``, ``sync`` and ``status``, tying them together.

Importing this package imports nothing heavy; torch comes in with :mod:`.rounds`.
"""

from .project import ProjectError
from .studio import StudioError

__all__ = ["ProjectError", "StudioError"]
