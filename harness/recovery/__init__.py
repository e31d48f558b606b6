"""Recovery of run folders whose process died: finding them, completing their files, finishing them."""
