"""Trains BP, FA and DFA on MNIST with dfa and draws what a user wants to see first: the test
error per epoch and each hidden layer's alignment with back-propagation's update direction.

    pip install ./python matplotlib
    DFA_DATA=../shared/data python examples/python/compare_rules.py --epochs 10 --out compare_rules.png

The angles are measured after every epoch on 1 000 test images (`Net.angles`): BP is at 0° by
definition; FA and DFA start near 90° and align as they learn (Nøkland 2016, Fig. 3)."""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import dfa  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--hidden", default="800,800", help="hidden widths, e.g. 800,800")
    p.add_argument("--train", type=int, default=60000, help="training samples (the first N)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="compare_rules.png")
    args = p.parse_args()

    x_train, y_train, x_test, y_test = dfa.datasets.mnist(args.data_dir)
    x_train, y_train = x_train[: args.train], y_train[: args.train]
    hidden = [int(w) for w in args.hidden.split(",")]
    probe = (x_test[:1000], y_test[:1000])

    fig, (errors, angles) = plt.subplots(1, 2, figsize=(11, 4.2))
    for rule, colour in (("bp", "C0"), ("fa", "C1"), ("dfa", "C2")):
        net = dfa.Net(hidden=hidden, act="tanh", rule=rule, seed=1)
        per_layer = []  # [epoch][layer] mean angle of δa (degrees)

        def measured(m, net=net, rule=rule, per_layer=per_layer):
            per_layer.append([a["delta_angle_mean"] for a in net.angles(*probe)])
            print(f"{rule:>3} epoch {m['epoch']:3d}  train {m['train_error']:6.2f}%  test {m['test_error']:6.2f}%")

        # on_epoch runs between epochs, when the net holds that epoch's weights
        history = net.fit(x_train, y_train, x_test, y_test, max_epochs=args.epochs, on_epoch=measured)
        epochs = [m["epoch"] for m in history]
        errors.plot(epochs, [m["test_error"] for m in history], color=colour, label=f"{rule.upper()} test")
        errors.plot(epochs, [m["train_error"] for m in history], color=colour, ls=":", label=f"{rule.upper()} train")
        if rule != "bp":
            for k in range(len(hidden)):
                angles.plot(epochs, [layer[k] for layer in per_layer], color=colour, ls=["-", "--", "-."][k % 3],
                            label=f"{rule.upper()} layer {k + 1}")
    errors.set(xlabel="epoch", ylabel="error (%)", yscale="log", title=f"MNIST {args.hidden} tanh")
    errors.legend(fontsize=8)
    angles.set(xlabel="epoch", ylabel="angle to BP's δa (°)", ylim=(0, 90), title="alignment with back-propagation")
    angles.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
