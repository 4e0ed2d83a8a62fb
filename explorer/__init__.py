"""What the app shows, computed from loaded models, with no Gradio here (app.py and ui/ lay out the page) and no
model math (that is vithybrid's and visualization's):

- runs: a loaded model and the runs the page asks of it (`Explorer`), one pass per photo;
- work: the queue that runs all model work, most urgent first, for sessions that may leave;
- cache: the analyses within a memory budget, and the photos being analysed;
- analysis: one photo's analysis, stored compactly;
- pictures: what is drawn from a model or an analysis without running it;
- facts: the numbers the guided walk tells;
- shelf: the models loaded for every session.
"""

from vithybrid import DEFAULT_MODEL  # the page's default model, the library's

from .cache import AnalysisCache, default_budget_mb
from .facts import ModelFacts, is_full_size
from .runs import FALLBACK_MODEL, TOP_K, Explorer
from .shelf import ModelShelf
from .work import LIBRARY, Priority, SessionLeft, WorkQueue

__all__ = ["DEFAULT_MODEL", "FALLBACK_MODEL", "LIBRARY", "TOP_K", "AnalysisCache", "Explorer", "ModelFacts",
           "ModelShelf", "Priority", "SessionLeft", "WorkQueue", "default_budget_mb", "is_full_size"]
