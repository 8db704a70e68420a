"""Sleep deprivation: reaction time over days, a random intercept and slope per subject.

Run: python examples/sleepstudy.py
"""

import arviz as az

import bayeslmm as bl


def main() -> None:
    data = bl.load_dataset("sleepstudy")
    model = bl.LMM("Reaction ~ Days + (Days | Subject)", data)
    print("Priors used:")
    for name, prior in model.priors.items():
        print(f"  {name:28s} {prior}")
    idata = model.fit(draws=1000, tune=1000, chains=4, random_seed=1, progressbar=False)
    print()
    model.summary()
    print("\nRandom effects of the first three subjects:")
    print(model.ranef()["Subject"].head(6).round(2).to_string())
    print("\nLeave-one-out cross-validation:")
    print(az.loo(idata))


if __name__ == "__main__":
    main()
