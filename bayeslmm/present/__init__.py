"""What a person reads: figures (:mod:`~bayeslmm.present.plots`), the HTML report and the
command line. No statistics here: numbers come from the layers below."""
