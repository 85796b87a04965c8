import importlib
import pkgutil

import nsgflow


def test_public_names_are_the_documented_functions_whatever_was_imported():
    for module in pkgutil.iter_modules(nsgflow.__path__):
        if module.name not in {"cli", "diagnostics"}:
            importlib.import_module(f"nsgflow.{module.name}")
    assert nsgflow.normalize.__module__ == "nsgflow.api" and callable(nsgflow.normalize)
    for name in nsgflow.__all__:
        assert getattr(nsgflow, name) is not None
    assert nsgflow.fit_scale.__module__ == "nsgflow.scale"


def test_default_settings_are_the_config_sections():
    settings = nsgflow.default_settings()
    assert set(settings) == {"detect", "match", "photometry", "scale", "samples", "gradient"}
    assert settings["gradient"]["smoothness"] == "auto"
