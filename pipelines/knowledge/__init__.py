"""mesoscan's treatment knowledge: versioned YAML files with their sources, validated on load.

    from pipelines.knowledge import load_knowledge
    kb = load_knowledge()          # this package's files, read once per process
    kb.ingredient_by_id["vitamin_c"].family   # -> "vitamins"

Files (each has ``version`` and ``sources``): ingredients, concerns (with the detection rules),
mapping (measured concern -> ingredients), contraindications, medications, care, courses,
devices. See README.md. A malformed file raises :class:`pipelines.errors.InvalidInput`
naming the file (``source``) and the field (``field``).
"""
from pipelines.knowledge.loader import FILES, KnowledgeBase, load_file, load_knowledge

__all__ = ["FILES", "KnowledgeBase", "load_file", "load_knowledge"]
