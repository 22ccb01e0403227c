"""Quick start: train a small network on scikit-learn's bundled digits and print its test accuracy.

Run with ``python -m flowlearn.examples.quickstart``. Needs nothing but flowlearn's own dependencies
and no network: the 1,797 8x8 digits ship with scikit-learn.
"""
import time
import warnings

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from flowlearn.estimators import DNNClassifier


def main():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    model = make_pipeline(
        MinMaxScaler(),
        DNNClassifier(hidden_units=(128, 64), epochs=60, batch_size=64, learning_rate=1e-3, random_state=0),
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        # 60 epochs is a deliberate budget for a quick demo, not a failure to converge.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    accuracy = model.score(X_test, y_test)
    print(f"flowlearn DNNClassifier on scikit-learn digits: {len(X_train)} train / {len(X_test)} test images")
    print(f"trained {model[-1].n_iter_} epochs in {seconds:.1f} s")
    print(f"test accuracy: {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main()
