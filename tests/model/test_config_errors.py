"""Bad AdapterConfig values are SpecErrors naming the key, never raw TypeError / ValueError / re.error."""

import pytest
from torch import nn

from tn_peft import AdapterConfig
from tn_peft.errors import SpecError
from tn_peft.model import get_model
from tn_peft.model.targets import ConfigNetworks


@pytest.mark.parametrize("kwargs, key", [
    ({"dropout": None}, "dropout"),
    ({"dropout": "abc"}, "dropout"),
    ({"dropout": [0.1]}, "dropout"),
    ({"dropout": "0.1"}, "dropout"),  # a string is a typo to report, never a value to convert (and save)
    ({"dropout": True}, "dropout"),
    ({"dropout": float("nan")}, "dropout"),
    ({"alpha": "16"}, "alpha"),
    ({"inference_mode": "yes"}, "inference_mode"),
    ({"base_model_name_or_path": 5}, "base_model_name_or_path"),
    ({"graph": 5}, "graph"),
    ({"graph_args": "x"}, "graph_args"),
    ({"graph_args": 5}, "graph_args"),
    ({"modules_to_save": 5}, "modules_to_save"),
    ({"modules_to_save": [5]}, "modules_to_save"),
    ({"modules_to_save": [""]}, "modules_to_save"),
    ({"modules_to_save": ["c" * 1001]}, "modules_to_save"),  # a name, not a regex: only its length is bounded
    ({"target_modules": "query("}, "target_modules"),
    ({"target_modules": "*query"}, "target_modules"),
    ({"target_modules": ["query"], "exclude_modules": "[value"}, "exclude_modules"),
    ({"layers_to_transform": [0], "layers_pattern": "layer("}, "layers_pattern"),
    ({"layers_to_transform": [0], "layers_pattern": ["h", "layers)"]}, "layers_pattern"),
    ({"layer_graph_args": {"(": {"rank": 2}}}, "layer_graph_args"),
])
def test_bad_values_are_spec_errors_naming_the_key(kwargs, key):
    kwargs = {"target_modules": ["query"], **kwargs}
    with pytest.raises(SpecError, match=key) as info:
        AdapterConfig(**kwargs)
    assert info.value.fix


def test_a_modules_to_save_name_no_module_has_is_a_spec_error():
    base = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    with pytest.raises(SpecError, match=r"modules_to_save=\['1\)'\] matched no module"):
        get_model(base, AdapterConfig(target_modules=["0"], modules_to_save=["1)"]))


@pytest.mark.parametrize("kwargs", [
    {"dropout": 0.1},
    {"dropout": 0},
    {"alpha": 16},
    {"alpha": 0.5},
    {"graph_args": None},
    {"graph_args": [("rank", 2)]},
    {"modules_to_save": "classifier"},
    {"modules_to_save": ("classifier", "score")},
    {"target_modules": "all-linear"},
    {"target_modules": r".*\.(query|value)"},
    {"exclude_modules": r".*\.key"},
    {"layers_to_transform": [0], "layers_pattern": ["layer", "h"]},
    {"layer_graph_args": {r"layer\.0\.query": {"rank": 2}}},
])
def test_good_values_still_pass(kwargs, tmp_path):
    """A good value is kept with its type, and saved and read back as it was given."""
    config = AdapterConfig(**{"target_modules": ["query"], **kwargs})
    for key, value in kwargs.items():
        if key in ("dropout", "alpha"):
            assert getattr(config, key) == value and type(getattr(config, key)) is type(value)
    again = AdapterConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()
    assert isinstance(again.dropout, (int, float)) and not isinstance(again.dropout, bool)


def test_layer_networks_resolves_each_module_once_per_key():
    """One network per layer_graph_args key, the base network where nothing overrides, a warning for
    a key that matches nothing."""
    config = AdapterConfig(graph="lora", graph_args={"rank": 4}, target_modules=["query", "value"],
                           layer_graph_args={"value": {"rank": 2}})
    networks_of = ConfigNetworks(config)
    network = networks_of.network()
    names = ["l0.query", "l0.value", "l1.query", "l1.value"]
    networks = networks_of.layer_networks(names)
    assert networks["l0.query"] is network and networks["l1.query"] is network
    assert networks["l0.value"] is networks["l1.value"] and networks["l0.value"] is not network
    assert networks["l0.value"].resolve(8, 8)["r"] == 2
    with pytest.warns(RuntimeWarning, match="did not match"):
        networks_of.layer_networks(["l0.query"])


def test_a_warning_points_at_the_users_line_however_deep_the_call():
    import inspect
    import warnings

    from tn_peft import TnPeftModel

    config = AdapterConfig(graph="lora", target_modules=["0"], layer_graph_args={"nomatch": {"rank": 2}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        get_model(nn.Sequential(nn.Linear(4, 4)), config)
        TnPeftModel(nn.Sequential(nn.Linear(4, 4)), config)
    assert [(w.filename, w.lineno) for w in caught] == [(__file__, line), (__file__, line + 1)]


def test_explicit_targets_the_model_lacks_are_a_spec_error():
    from tn_peft.model.targets import resolve_config

    with pytest.raises(SpecError, match="the model has no module '1'"):
        resolve_config(AdapterConfig(graph="lora", target_modules=["0"]), nn.Sequential(nn.Linear(4, 4)), targets=["1"])
