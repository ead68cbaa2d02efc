# Peer fits for bench_fit.py. Usage:
#   Rscript benchmarks/fit_peers.R nlme DATA.csv MODEL OUT.json      (MODEL: oral1 | iv2)
#   Rscript benchmarks/fit_peers.R stan DATA.csv oral1 OUT.json CHAINS WARMUP SAMPLES
# nlme: ML, log-normal random effects (diagonal), proportional error via varPower(fixed = 1).
# stan: the same hierarchical 1-cmt oral model as insilico's NUTS (centred etas, the same priors), rstan.
args <- commandArgs(trailingOnly = TRUE)
what <- args[1]; d <- read.csv(args[2], na.strings = "."); model <- args[3]; out <- args[4]
num <- function(x) sprintf("%.10g", x)
obs <- d[d$EVID == 0, ]
dose <- d[d$EVID == 1, ]
obs$AMT <- dose$AMT[match(obs$ID, dose$ID)]
if (!is.null(dose$RATE)) obs$RATE <- dose$RATE[match(obs$ID, dose$ID)]
if (what == "nlme") {
  suppressMessages(library(nlme))
  oral1 <- function(amt, t, lcl, lv, lka) {
    cl <- exp(lcl); v <- exp(lv); ka <- exp(lka); k <- cl / v
    amt * ka / (v * (ka - k)) * (exp(-k * t) - exp(-ka * t))
  }
  iv2 <- function(amt, rate, t, wt, lcl, lv1, lq, lv2) {
    cl <- exp(lcl) * (wt / 70)^0.75; v1 <- exp(lv1); q <- exp(lq); v2 <- exp(lv2)
    k10 <- cl / v1; k12 <- q / v1; k21 <- q / v2
    s <- k10 + k12 + k21; r <- sqrt(s^2 - 4 * k10 * k21); a <- (s + r) / 2; b <- (s - r) / 2
    dur <- amt / rate
    A <- (a - k21) / (a - b) / (v1 * a); B <- (k21 - b) / (a - b) / (v1 * b)
    term <- function(x, c) c * rate * ifelse(t <= dur, 1 - exp(-x * t), (1 - exp(-x * dur)) * exp(-x * (t - dur)))
    term(a, A) + term(b, B)
  }
  t0 <- proc.time()[["elapsed"]]
  ctl <- nlmeControl(maxIter = 200, msMaxIter = 200, pnlsTol = 1e-6, tolerance = 1e-8)
  if (model == "oral1") {
    fit <- nlme(DV ~ oral1(AMT, TIME, lcl, lv, lka), data = obs, fixed = lcl + lv + lka ~ 1,
                random = pdDiag(lcl + lv + lka ~ 1), groups = ~ID, weights = varPower(fixed = 1),
                start = c(lcl = log(2), lv = log(20), lka = log(1)), method = "ML", control = ctl)
  } else {
    fit <- nlme(DV ~ iv2(AMT, RATE, TIME, WT, lcl, lv1, lq, lv2), data = obs, fixed = lcl + lv1 + lq + lv2 ~ 1,
                random = pdDiag(lcl + lv1 ~ 1), groups = ~ID, weights = varPower(fixed = 1),
                start = c(lcl = log(4), lv1 = log(20), lq = log(5), lv2 = log(40)), method = "ML", control = ctl)
  }
  secs <- proc.time()[["elapsed"]] - t0
  fe <- fixef(fit)
  writeLines(paste0("{\"software\": \"nlme ", packageVersion("nlme"), "\", \"seconds\": ", num(secs),
                    ", \"m2ll\": ", num(-2 * as.numeric(logLik(fit))),
                    ", \"fixed\": {", paste0("\"", names(fe), "\": ", num(fe), collapse = ", "), "}}"), out)
} else {
  suppressMessages(library(rstan))
  chains <- as.integer(args[5]); warmup <- as.integer(args[6]); samples <- as.integer(args[7])
  code <- "
data { int N; int n; int id[n]; vector[n] t; vector[n] y; vector[N] amt; }
parameters {
  real<lower=0> CL; real<lower=0> V; real<lower=0> KA;
  vector<lower=0>[2] omega_sd; real<lower=0> sigma_sd;
  vector[2] eta[N];
}
model {
  CL ~ lognormal(log(2.5), 2); V ~ lognormal(log(25), 2); KA ~ lognormal(log(1), 2);
  omega_sd ~ normal(0, 1); sigma_sd ~ normal(0, 5 * 0.15);
  for (i in 1:N) eta[i] ~ normal(0, omega_sd);
  {
    vector[n] f;
    for (j in 1:n) {
      real cl = CL * exp(eta[id[j]][1]); real v = V * exp(eta[id[j]][2]); real k = cl / v;
      f[j] = amt[id[j]] * KA / (v * (KA - k)) * (exp(-k * t[j]) - exp(-KA * t[j]));
    }
    y ~ normal(f, sigma_sd * f);
  }
}"
  t0 <- proc.time()[["elapsed"]]
  sm <- stan_model(model_code = code)
  compile <- proc.time()[["elapsed"]] - t0
  ids <- as.integer(factor(obs$ID))
  data <- list(N = max(ids), n = nrow(obs), id = ids, t = obs$TIME, y = obs$DV,
               amt = dose$AMT[order(unique(dose$ID))])
  t1 <- proc.time()[["elapsed"]]
  fit <- sampling(sm, data = data, chains = chains, warmup = warmup, iter = warmup + samples, cores = 2,
                  refresh = 0, seed = 1, init = function() list(CL = 2.5, V = 25, KA = 1, omega_sd = c(0.3, 0.3),
                                                                  sigma_sd = 0.15, eta = replicate(max(ids), c(0, 0), simplify = FALSE)))
  wall <- proc.time()[["elapsed"]] - t1
  s <- summary(fit, pars = c("CL", "V", "KA", "omega_sd", "sigma_sd"))$summary
  div <- sum(sapply(get_sampler_params(fit, inc_warmup = FALSE), function(x) sum(x[, "divergent__"])))
  writeLines(paste0("{\"software\": \"rstan ", packageVersion("rstan"), "\", \"compile_seconds\": ", num(compile),
                    ", \"seconds\": ", num(wall), ", \"divergences\": ", div,
                    ", \"ess\": {", paste0("\"", rownames(s), "\": ", num(s[, "n_eff"]), collapse = ", "), "}",
                    ", \"mean\": {", paste0("\"", rownames(s), "\": ", num(s[, "mean"]), collapse = ", "), "}",
                    ", \"rhat\": {", paste0("\"", rownames(s), "\": ", num(s[, "Rhat"]), collapse = ", "), "}}"), out)
}
