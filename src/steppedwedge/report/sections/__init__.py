"""The report's sections, one module per part of the CONSORT-SW checklist.

- :mod:`.trial`: design, randomisation, participant flow and exposure;
- :mod:`.planning`: sample size, and the planning assumptions against the estimates;
- :mod:`.outcomes`: the outcome over time;
- :mod:`.analysis`: primary analysis, sensitivity panel, model checks;
- :mod:`.record`: deviations from the plan and provenance.
"""
