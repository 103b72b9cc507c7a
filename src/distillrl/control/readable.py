"""Students you can read: a formula (linear or sparse polynomial, scikit-learn) or a decision tree.

Each regresses the head's target (heads.py: the teacher's pre-squash mean for `squashed`, its box mean for
`gaussian`, its centred log-probabilities for `categorical`) on raw observations, and acts through the head's
link (tanh, clip, argmax). The tree on a categorical head classifies the teacher's greedy action instead.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import Lasso, Ridge
from sklearn.preprocessing import PolynomialFeatures, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from torch import Tensor

from distillrl.control.heads import CategoricalHead


class FormulaPolicy:
    """degree 1: Ridge on standardised observations; degree 2-3: PolynomialFeatures -> StandardScaler -> Lasso
    (sparse). The fitted model is folded back to raw observation units:

        u_k = b_k + sum_j c_kj phi_j(o),   c_kj = w_kj / sigma_j,   b_k = w0_k - sum_j w_kj mu_j / sigma_j

    with (mu_j, sigma_j) the scaler's mean and std of the monomial phi_j, w the fitted (standardised) weights."""

    def __init__(self, head, degree: int, alpha: float):
        self.head, self.degree = head, degree
        self.features = PolynomialFeatures(degree, include_bias=False)
        self.scaler = StandardScaler()
        self.model = Ridge(alpha=alpha) if degree == 1 else Lasso(alpha=alpha, max_iter=20_000)
        self.coefficients: np.ndarray | None = None  # [outputs, monomials], raw units
        self.intercepts: np.ndarray | None = None  # [outputs]

    def fit(self, states: np.ndarray, teacher: Tensor) -> None:
        monomials = self.features.fit_transform(states)
        self.model.fit(self.scaler.fit_transform(monomials), self.head.regression_target(teacher))
        weights = np.atleast_2d(self.model.coef_)
        self.coefficients = weights / self.scaler.scale_
        self.intercepts = np.atleast_1d(self.model.intercept_) - self.coefficients @ self.scaler.mean_

    def predict(self, states: np.ndarray) -> np.ndarray:
        """u = b + C phi(o) from the folded-back coefficients (the formula that is printed is what acts)."""
        return self.features.transform(np.asarray(states, dtype=np.float64)) @ self.coefficients.T + self.intercepts

    def act(self, states: np.ndarray, greedy: bool = True) -> np.ndarray:
        return self.head.act_from_regression(self.predict(states))

    @property
    def num_parameters(self) -> int:
        """Non-zero terms: coefficients and intercepts."""
        return int(np.count_nonzero(self.coefficients) + np.count_nonzero(self.intercepts))

    def formula(self) -> str:
        """The policy in raw observation units o0, o1, ...: one line per output, then the head's link."""
        names = self.features.get_feature_names_out([f"o{j}" for j in range(self.features.n_features_in_)])
        outputs, link = self.head.formula_outputs()
        lines = []
        for output, intercept, row in zip(outputs, self.intercepts, self.coefficients):
            terms = [f"{c:+.4g} {n.replace(' ', '*')}" for c, n in zip(row, names) if c != 0.0]
            lines.append(f"{output} = {intercept:+.4g} " + " ".join(terms))
        return "\n".join(lines + [link])


class TreePolicy:
    """A scikit-learn decision tree (an auditable student): a classifier of the teacher's greedy action on a
    categorical head, a regressor of the head's target on a Box head."""

    def __init__(self, head, max_depth: int, seed: int):
        self.head = head
        self.classifies = isinstance(head, CategoricalHead)
        tree_class = DecisionTreeClassifier if self.classifies else DecisionTreeRegressor
        self.tree = tree_class(max_depth=max_depth, random_state=seed)

    def fit(self, states: np.ndarray, teacher: Tensor) -> None:
        self.tree.fit(states, teacher.argmax(-1).numpy() if self.classifies else self.head.regression_target(teacher))

    def act(self, states: np.ndarray, greedy: bool = True) -> np.ndarray:
        predicted = self.tree.predict(np.asarray(states))
        return predicted if self.classifies else self.head.act_from_regression(predicted)

    @property
    def num_parameters(self) -> int:
        """Internal nodes (a feature and a threshold each) plus leaves (an action, or d values, each)."""
        nodes = self.tree.tree_.node_count
        leaves = self.tree.get_n_leaves()
        return int(2 * (nodes - leaves) + leaves * (1 if self.classifies else self.head.target_dim))

    def formula(self) -> str:
        return f"decision tree of depth {self.tree.get_depth()} with {self.tree.get_n_leaves()} leaves"
