import glob, numpy as np, pandas as pd
rows = []
for f in sorted(glob.glob('/tmp/indep17/sim_S*.pkl')):
    d = pd.read_pickle(f)
    for (sc, n, eff), g in d.groupby(["scen", "n", "effect"]):
        k = len(g)
        rej = (g.p < 0.05).mean(); rwc = (g.p_wc < 0.05).mean()
        truth = np.log(eff)
        cov = ((g.lo <= truth) & (truth <= g.hi)).mean()
        rec = dict(file=f.split('/')[-1][4:-4], n=n, H="H0" if eff == 1 else "5% excess", tests=k,
                   cens=g.cens.mean(), off_fail=g.off_fail.mean(),
                   rej=rej, se=np.sqrt(rej * (1 - rej) / k),
                   rej_worstcase=rwc, se_wc=np.sqrt(rwc * (1 - rwc) / k),
                   ci_cover=cov, est_bias=g.est.mean() - truth, est_median_bias=g.est.median() - truth)
        if "p_myspec" in g and g.p_myspec.notna().any():
            pm = np.where(g.p_myspec.notna(), g.p_myspec, g.p)
            rec["rej_myspec"] = (pm < 0.05).mean()
        rows.append(rec)
pd.set_option("display.width", 250)
print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
